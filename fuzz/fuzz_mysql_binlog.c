/* libFuzzer target: a stream of binlog events (header included), each prefixed by a little-endian
 * u16 length, as the mysql-cdc worker receives them; the first byte says whether events carry a
 * CRC32 (the format description event may change it). Every event either decodes or is refused
 * with a reason; TABLE_MAP events feed a one-table cache; every row of a ROWS event becomes an
 * envelope that must be valid MessagePack convertible to JSON and whose resume key reads back, and
 * the connector's row path (sl_my_change_next) must write the same bytes or refuse the same row. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/mysql/binlog.h"
#include "formats/json_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static void check(const struct sl_buf *env)
{
    struct sl_buf j;
    sl_buf_init(&j, 0);
    size_t used;
    char file[64];
    uint64_t pos;
    uint32_t row;
    int snap;
    if (sl_mp_to_json(env->data, env->len, &used, &j, 200, NULL) != 0 || used != env->len)
        abort(); /* an envelope that cannot be shown as JSON */
    if (sl_my_envelope_position(env->data, env->len, file, sizeof(file), &pos, &row, &snap) != 0 ||
        strcmp(file, "binlog.000001") || pos != 4 || row != 3 || snap)
        abort();
    sl_buf_release(&j);
}

static void rows(const struct sl_my_header *h, const uint8_t *body, size_t n,
                 const struct sl_my_table *t)
{
    struct sl_my_rows r;
    const char *why;
    if (sl_my_rows_begin(h->type, body, n, &r, &why) != 0) {
        if (!why)
            abort();
        return;
    }
    struct sl_buf before, after, env;
    sl_buf_init(&before, 1 << 20);
    sl_buf_init(&after, 1 << 20);
    sl_buf_init(&env, 0);
    struct sl_my_source src = {.db = t->db,
                               .table = t->table,
                               .file = "binlog.000001",
                               .pos = 4,
                               .row = 3,
                               .gtid = "0-1-2"};
    /* the connector's row path on a second cursor: the same bytes, or the same refusal */
    struct sl_my_rows r2 = r;
    struct sl_my_srcenc se;
    struct sl_buf direct;
    sl_buf_init(&se.b, 0);
    sl_buf_init(&direct, 2 << 20);
    sl_my_source_encode(&se, &src);
    for (int k = 0; k < 1000; k++) {
        sl_buf_reset(&before);
        sl_buf_reset(&after);
        int rc = sl_my_row_next(&r, t, &before, &after, &why);
        sl_buf_reset(&direct);
        int rc2 = sl_my_change_next(&direct, &r2, t, &se, 3, 1, &why);
        if (rc <= 0) {
            if (rc == -1 && !why)
                abort();
            if (rc != rc2 || (rc2 == -1 && direct.len))
                abort();
            break;
        }
        sl_buf_reset(&env);
        if (sl_my_envelope_mp(&env, r.op, r.op == 'c' ? NULL : &before, r.op == 'd' ? NULL : &after,
                              &src, 1) == 0) {
            check(&env);
            if (rc2 != 1 || direct.len != env.len || memcmp(direct.data, env.data, env.len))
                abort();
        }
    }
    sl_buf_release(&before);
    sl_buf_release(&after);
    sl_buf_release(&env);
    sl_buf_release(&direct);
    sl_buf_release(&se.b);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1)
        return 0;
    int checksum = d[0] & 1;
    d++, n--;
    struct sl_my_table t;
    int have = 0;
    while (n >= 2) {
        size_t len = (size_t)d[0] | (size_t)d[1] << 8;
        d += 2, n -= 2;
        if (len > n)
            len = n;
        /* a copy of exactly len bytes, so ASan sees any read past the event */
        uint8_t *ev = malloc(len ? len : 1);
        memcpy(ev, d, len);
        struct sl_my_header h;
        const char *why = NULL;
        long body = sl_my_event(ev, len, checksum, &h, &why);
        if ((body < 0) != (why != NULL))
            abort();
        if (body >= 0) {
            const uint8_t *b = ev + SL_MY_HEADER_LEN;
            size_t bn = (size_t)body;
            struct sl_my_gtid g;
            struct sl_my_query q;
            struct sl_my_str f;
            uint64_t pos;
            switch (h.type) {
            case SL_MY_FORMAT_DESCRIPTION:
                sl_my_fde_checksum(b, len - SL_MY_HEADER_LEN, &checksum, &why);
                break;
            case SL_MY_TABLE_MAP:
                if (have)
                    sl_my_table_release(&t);
                have = sl_my_table_parse(b, bn, &t, &why) == 0;
                break;
            case SL_MY_GTID:
                sl_my_gtid(b, bn, &g, &why);
                break;
            case SL_MY_QUERY:
                sl_my_query(b, bn, &q, &why);
                break;
            case SL_MY_ROTATE:
                sl_my_rotate(b, bn, &pos, &f, &why);
                break;
            default:
                if (have && ((h.type >= SL_MY_WRITE_ROWS_V1 && h.type <= SL_MY_DELETE_ROWS_V1) ||
                             (h.type >= SL_MY_WRITE_ROWS && h.type <= SL_MY_DELETE_ROWS)))
                    rows(&h, b, bn, &t);
                break;
            }
        }
        free(ev);
        d += len, n -= len;
    }
    if (have)
        sl_my_table_release(&t);
    return 0;
}
