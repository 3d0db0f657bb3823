/* pgoutput decoder on hand-built messages (byte layouts from the PostgreSQL docs, "Logical
 * Replication Message Formats"), value typing by OID, and the exact change envelope. */
#include "t.h"
#include "connectors/pg/pgoutput.h"
#include "connectors/pg/values.h"
#include "formats/json_mp.h"

#include <stdlib.h>

static struct sl_buf M; /* the message being built */

static void u8(uint8_t v)
{
    sl_buf_putc(&M, v);
}
static void u16(uint16_t v)
{
    sl_buf_put_be16(&M, v);
}
static void u32(uint32_t v)
{
    sl_buf_put_be32(&M, v);
}
static void u64(uint64_t v)
{
    sl_buf_put_be64(&M, v);
}
static void str(const char *s)
{
    sl_buf_append(&M, s, strlen(s) + 1);
}
static void tcol(const char *s)
{
    u8('t');
    u32((uint32_t)strlen(s));
    sl_buf_append(&M, s, strlen(s));
}

static struct sl_pgo_event EV;

static int parse(void)
{
    const char *why = NULL;
    return sl_pgo_parse(M.data, M.len, &EV, &why);
}

/* The JSON text of one value typed by oid. */
static char *typed(uint32_t oid, const char *text)
{
    static char out[512];
    struct sl_buf b, j;
    sl_buf_init(&b, 0);
    sl_buf_init(&j, 0);
    size_t used;
    sl_pg_value_mp(&b, oid, text, strlen(text));
    if (sl_mp_to_json(b.data, b.len, &used, &j, 64, NULL) == 0)
        snprintf(out, sizeof(out), "%.*s", (int)j.len, (const char *)j.data);
    else
        snprintf(out, sizeof(out), "(not JSON)");
    sl_buf_release(&b);
    sl_buf_release(&j);
    return out;
}

static void relation(uint32_t relid, int with_extra_col)
{
    sl_buf_reset(&M);
    u8('R');
    u32(relid);
    str("public");
    str("orders");
    u8('d');
    u16(with_extra_col ? 3 : 2);
    u8(1), str("id"), u32(23), u32((uint32_t)-1);
    u8(0), str("note"), u32(25), u32((uint32_t)-1);
    if (with_extra_col)
        u8(0), str("total"), u32(1700), u32((uint32_t)-1);
}

static char *envelope(char op, const struct sl_pgo_rel *rel, const struct sl_pgo_tuple *before,
                      int key_only, const struct sl_pgo_tuple *after)
{
    static char out[2048];
    struct sl_pg_source src = {.db = "shop",
                               .lsn = 0x100,
                               .commit_lsn = 0x200,
                               .tx_index = 3,
                               .txid = 42,
                               .commit_ts_ms = 1700000000000,
                               .snapshot = 0};
    struct sl_buf b, j;
    sl_buf_init(&b, 0);
    sl_buf_init(&j, 0);
    size_t used;
    sl_pg_envelope_mp(&b, op, rel, before, key_only, after, &src, 1700000000123);
    if (sl_mp_to_json(b.data, b.len, &used, &j, 64, NULL) == 0)
        snprintf(out, sizeof(out), "%.*s", (int)j.len, (const char *)j.data);
    uint64_t lsn = 0;
    uint32_t idx = 0;
    T_CHECK(sl_pg_envelope_position(b.data, b.len, &lsn, &idx) == 0 && lsn == 0x200 && idx == 3,
            "the resume position reads back from the envelope (op %c)", op);
    sl_buf_release(&b);
    sl_buf_release(&j);
    return out;
}

int main(void)
{
    sl_buf_init(&M, 0);
    const char *why = NULL;

    /* Begin / Commit */
    u8('B'), u64(0x16B3748), u64(757000000000000ull), u32(727);
    T_CHECK(parse() == 0 && EV.type == SL_PGO_BEGIN && EV.u.begin.final_lsn == 0x16B3748 &&
                EV.u.begin.xid == 727,
            "Begin: final LSN and xid");
    T_EQ_INT(sl_pg_ts_to_unix_ms(EV.u.begin.commit_ts_us), 757000000000LL + 946684800000LL,
             "commit timestamp: PostgreSQL epoch microseconds -> Unix ms");
    sl_buf_reset(&M);
    u8('C'), u8(0), u64(0x16B3748), u64(0x16B3778), u64(1);
    T_CHECK(parse() == 0 && EV.type == SL_PGO_COMMIT && EV.u.commit.commit_lsn == 0x16B3748 &&
                EV.u.commit.end_lsn == 0x16B3778,
            "Commit: commit and end LSN");

    /* Relation, then the cache */
    struct sl_pgo_relcache rc;
    sl_pgo_relcache_init(&rc);
    relation(16384, 0);
    T_CHECK(parse() == 0 && EV.type == SL_PGO_RELATION && EV.u.relation.ncols == 2 &&
                EV.u.relation.replident == 'd',
            "Relation: columns and replica identity");
    struct sl_pgo_rel *rel = sl_pgo_relcache_put(&rc, &EV);
    T_CHECK(rel && !strcmp(rel->nspname, "public") && !strcmp(rel->relname, "orders") &&
                rel->ncols == 2 && rel->cols[0].key && !rel->cols[1].key &&
                rel->cols[0].type_oid == 23 && !strcmp(rel->cols[1].name, "note"),
            "the relation cache keeps names, types and key flags");

    /* Insert: text, NULL */
    sl_buf_reset(&M);
    u8('I'), u32(16384), u8('N'), u16(2), tcol("7"), u8('n');
    T_CHECK(parse() == 0 && EV.type == SL_PGO_INSERT && EV.u.change.relid == 16384 &&
                EV.u.change.new_tup.ncols == 2 && EV.u.change.new_tup.cols[1].kind == 'n',
            "Insert: new tuple with a NULL");
    T_EQ_STR(envelope('c', rel, NULL, 0, &EV.u.change.new_tup),
             "{\"op\":\"c\",\"before\":null,\"after\":{\"id\":7,\"note\":null},\"source\":{"
             "\"connector\":\"sluice\",\"db\":\"shop\",\"schema\":\"public\",\"table\":\"orders\","
             "\"lsn\":256,\"commit_lsn\":512,\"tx_index\":3,\"txid\":42,\"commit_ts_ms\":"
             "1700000000000,\"snapshot\":false},\"ts_ms\":1700000000123}",
             "insert envelope, exactly");

    /* Update with the whole old row (REPLICA IDENTITY FULL) and an unchanged TOAST value */
    sl_buf_reset(&M);
    u8('U'), u32(16384), u8('O'), u16(2), tcol("7"), tcol("old"), u8('N'), u16(2), tcol("7"),
        u8('u');
    T_CHECK(parse() == 0 && EV.type == SL_PGO_UPDATE && EV.u.change.old_kind == 'O' &&
                EV.u.change.new_tup.cols[1].kind == 'u',
            "Update: old row and new row with an unchanged TOASTed column");
    const char *e = envelope('u', rel, &EV.u.change.old_tup, 0, &EV.u.change.new_tup);
    T_CHECK(strstr(e, "\"before\":{\"id\":7,\"note\":\"old\"},\"after\":{\"id\":7,\"note\":"
                      "\"" SL_PG_TOAST_MARKER "\"}") != NULL,
            "update envelope: before is the old row, the TOAST marker stands for the value (%s)",
            e);

    /* Update without old tuple */
    sl_buf_reset(&M);
    u8('U'), u32(16384), u8('N'), u16(2), tcol("8"), tcol("x");
    T_CHECK(parse() == 0 && EV.u.change.old_kind == 0 && EV.u.change.new_tup.ncols == 2,
            "Update with DEFAULT identity and an unchanged key: no old tuple");

    /* Delete with the key only */
    sl_buf_reset(&M);
    u8('D'), u32(16384), u8('K'), u16(2), tcol("7"), u8('n');
    T_CHECK(parse() == 0 && EV.type == SL_PGO_DELETE && EV.u.change.old_kind == 'K',
            "Delete: key tuple");
    e = envelope('d', rel, &EV.u.change.old_tup, 1, NULL);
    T_CHECK(strstr(e, "\"op\":\"d\",\"before\":{\"id\":7},\"after\":null") != NULL,
            "delete envelope: before holds only the key columns (%s)", e);

    /* Truncate */
    sl_buf_reset(&M);
    u8('T'), u32(2), u8(1), u32(16384), u32(16390);
    T_CHECK(parse() == 0 && EV.type == SL_PGO_TRUNCATE && EV.u.truncate.nrels == 2 &&
                sl_pgo_truncate_relid(&EV, 1) == 16390 && EV.u.truncate.options == 1,
            "Truncate: relation ids and options");

    /* Type, Origin, Message */
    sl_buf_reset(&M);
    u8('Y'), u32(99999), str("public"), str("mood");
    T_CHECK(parse() == 0 && EV.type == SL_PGO_TYPE && EV.u.typ.oid == 99999, "Type message");
    sl_buf_reset(&M);
    u8('O'), u64(5), str("node_a");
    T_CHECK(parse() == 0 && EV.type == SL_PGO_ORIGIN && !strcmp(EV.u.origin.name.s, "node_a"),
            "Origin message");
    sl_buf_reset(&M);
    u8('M'), u8(1), u64(5), str("pfx"), u32(3), sl_buf_append(&M, "abc", 3);
    T_CHECK(parse() == 0 && EV.type == SL_PGO_MESSAGE, "logical decoding Message");

    /* Schema change: a new Relation message replaces the column map */
    relation(16384, 1);
    parse();
    rel = sl_pgo_relcache_put(&rc, &EV);
    T_CHECK(rel && rel->ncols == 3 && rc.n == 1 && !strcmp(rel->cols[2].name, "total"),
            "a new Relation message for the same id replaces the cached columns");
    sl_buf_reset(&M);
    u8('I'), u32(16384), u8('N'), u16(3), tcol("9"), tcol("n"), tcol("12.50");
    parse();
    e = envelope('c', rel, NULL, 0, &EV.u.change.new_tup);
    T_CHECK(strstr(e, "\"after\":{\"id\":9,\"note\":\"n\",\"total\":\"12.50\"}") != NULL,
            "the added column appears in later records (%s)", e);
    T_CHECK(sl_pgo_relcache_get(&rc, 1) == NULL, "an unknown relation id is not in the cache");

    /* malformed input */
    static const struct {
        const char *bytes;
        size_t n;
        const char *what;
    } bad[] = {
        {"", 0, "empty message"},
        {"Z", 1, "unknown message type"},
        {"B\0\0\0", 4, "truncated Begin"},
        {"I\0\0\0\1N\0\1x", 9, "unknown column kind"},
        {"I\0\0\0\1N\0\1t\0\0\0\11ab", 14, "text column longer than the message"},
        {"I\0\0\0\1X\0\0", 8, "insert without N"},
        {"D\0\0\0\1N\0\0", 8, "delete without K/O"},
        {"R\0\0\0\1pub", 8, "unterminated string"},
        {"T\xff\xff\xff\xff\0", 6, "truncate with an absurd count"},
        {"I\0\0\0\1N\xff\xff", 8, "more columns than PostgreSQL allows"},
        {"C\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0X", 27, "trailing bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        int r = sl_pgo_parse((const uint8_t *)bad[i].bytes, bad[i].n, &EV, &why);
        T_CHECK(r == -1 && why, "rejected: %s (%s)", bad[i].what, why ? why : "no reason");
    }

    /* value typing */
    T_EQ_STR(typed(23, "-42"), "-42", "int4 -> number");
    T_EQ_STR(typed(20, "9223372036854775807"), "9223372036854775807", "int8 max -> exact number");
    T_EQ_STR(typed(1700, "123456789012345678901234567890.000000001"),
             "\"123456789012345678901234567890.000000001\"",
             "numeric -> string, no precision lost");
    T_EQ_STR(typed(16, "t"), "true", "bool t");
    T_EQ_STR(typed(16, "f"), "false", "bool f");
    T_EQ_STR(typed(701, "1.5"), "1.5", "float8 -> number");
    T_EQ_STR(typed(701, "NaN"), "\"NaN\"", "float8 NaN -> string");
    T_EQ_STR(typed(3802, "{\"a\": [1, true, null]}"), "{\"a\":[1,true,null]}",
             "jsonb -> the JSON value");
    T_EQ_STR(typed(114, "\"s\""), "\"s\"", "json string -> JSON string");
    T_EQ_STR(typed(1114, "2024-01-02 03:04:05.123456"), "\"2024-01-02T03:04:05.123456Z\"",
             "timestamp -> ISO-8601 UTC");
    T_EQ_STR(typed(1184, "2024-01-02 03:04:05+00"), "\"2024-01-02T03:04:05Z\"",
             "timestamptz in UTC -> Z");
    T_EQ_STR(typed(1184, "2024-01-02 03:04:05+05:30"), "\"2024-01-02T03:04:05+05:30\"",
             "timestamptz with another offset keeps it");
    T_EQ_STR(typed(1184, "infinity"), "\"infinity\"", "timestamptz infinity stays text");
    T_EQ_STR(typed(17, "\\x"), "\"\"", "empty bytea -> empty base64");
    T_EQ_STR(typed(17, "\\x01"), "\"AQ==\"", "bytea 1 byte -> base64 with padding");
    T_EQ_STR(typed(17, "\\x0102ff00"), "\"AQL/AA==\"", "bytea -> base64");
    T_EQ_STR(typed(1007, "{1,NULL,3}"), "[1,null,3]", "int4[] with NULL");
    T_EQ_STR(typed(1007, "{{1,2},{3,4}}"), "[[1,2],[3,4]]", "int4[][]");
    T_EQ_STR(typed(1007, "[0:1]={5,6}"), "[5,6]", "array with explicit bounds");
    T_EQ_STR(typed(1009, "{a,\"b c\",\"q\\\"x\",\"NULL\",NULL}"),
             "[\"a\",\"b c\",\"q\\\"x\",\"NULL\",null]", "text[] with quoting and NULL");
    T_EQ_STR(typed(1007, "{}"), "[]", "empty array");
    T_EQ_STR(typed(1007, "{1,2"), "\"{1,2\"", "a malformed array literal stays text");
    T_EQ_STR(typed(1000, "{t,f}"), "[true,false]", "bool[]");
    T_EQ_STR(typed(2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
             "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"", "uuid -> string");
    T_EQ_STR(typed(25, "caf\xc3\xa9"), "\"caf\xc3\xa9\"", "UTF-8 text kept");
    T_EQ_STR(typed(25, "bad\xff"), "\"bad\xef\xbf\xbd\"", "invalid UTF-8 replaced by U+FFFD");
    T_EQ_STR(typed(23, "12x"), "\"12x\"", "a non-number int4 text stays text");

    /* LSN text */
    char lsn[24];
    sl_pgo_lsn_str(0x16B3748, lsn);
    T_EQ_STR(lsn, "0/16B3748", "LSN printed as PostgreSQL does");
    uint64_t v = 0;
    T_CHECK(sl_pgo_lsn_parse("1A/FF", &v) == 0 && v == ((0x1Aull << 32) | 0xFF), "LSN parsed");
    T_CHECK(sl_pgo_lsn_parse("1A", &v) == -1 && sl_pgo_lsn_parse("1/2x", &v) == -1,
            "bad LSN text rejected");
    T_CHECK(sl_pg_envelope_position((const uint8_t *)"\x80", 1, &v, &(uint32_t){0}) == -1,
            "a payload that is not an envelope has no position");

    sl_pgo_relcache_release(&rc);
    sl_buf_release(&M);
    return T_DONE();
}
