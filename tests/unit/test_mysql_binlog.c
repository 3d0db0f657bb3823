/* The binlog event decoder on hand-built events (byte layouts from MariaDB's "Replication
 * Protocol" pages and MySQL's binlog event documentation): header and checksum, GTID, QUERY,
 * ROTATE, TABLE_MAP with FULL optional metadata, WRITE/UPDATE/DELETE rows of every common type,
 * malformed input, and the change envelope with its resume key. */
#include "connectors/mysql/binlog.h"
#include "formats/json_mp.h"
#include "t.h"

#include <stdlib.h>
#include <zlib.h>

static struct sl_buf M; /* the bytes being built */

static void u8(uint8_t v)
{
    sl_buf_putc(&M, v);
}
static void le(uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        u8((uint8_t)(v >> (8 * i)));
}
static void be(uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        u8((uint8_t)(v >> (8 * i)));
}
static void bytes(const void *p, size_t n)
{
    sl_buf_append(&M, p, n);
}
static void lstr(const char *s) /* length-encoded string */
{
    u8((uint8_t)strlen(s));
    bytes(s, strlen(s));
}

/* A TLV field of the optional metadata, its value built by fill(). */
static void tlv(uint8_t type, void (*fill)(void))
{
    struct sl_buf saved = M;
    sl_buf_init(&M, 0);
    fill();
    struct sl_buf v = M;
    M = saved;
    u8(type);
    u8((uint8_t)v.len);
    bytes(v.data, v.len);
    sl_buf_release(&v);
}

static const char *const g_names[] = {"id", "u", "v", "d",  "dt", "e",  "s",
                                      "b",  "l", "n", "tm", "ts", "bt", "y"};
#define NCOLS 14

static void f_signed(void)
{
    u8(0x40); /* numeric columns id, u, d, n: only u is unsigned */
}
static void f_charset(void)
{
    u8(45);        /* default utf8mb4 */
    u8(1), u8(63); /* char column 1 (b): binary */
    u8(2), u8(8);  /* char column 2 (l): latin1 */
}
static void f_names(void)
{
    for (int i = 0; i < NCOLS; i++)
        lstr(g_names[i]);
}
static void f_set(void)
{
    u8(3), lstr("a"), lstr("b"), lstr("c");
}
static void f_enum(void)
{
    u8(2), lstr("x"), lstr("yy");
}
static void f_pk(void)
{
    u8(0);
}

static void table_map(int with_names)
{
    sl_buf_reset(&M);
    le(42, 6), le(1, 2);
    u8(3), bytes("app", 4);
    u8(1), bytes("t", 2);
    u8(NCOLS);
    static const uint8_t types[NCOLS] = {3, 1, 15, 246, 18, 254, 254, 252, 15, 3, 19, 17, 16, 13};
    bytes(types, NCOLS);
    static const uint8_t meta[] = {80,  0,  /* v VARCHAR(80) */
                                   10,  2,  /* d DECIMAL(10,2) */
                                   3,       /* dt DATETIME(3) */
                                   247, 1,  /* e ENUM, 1 byte */
                                   248, 1,  /* s SET, 1 byte */
                                   2,       /* b BLOB: 2 length bytes */
                                   10,  0,  /* l VARCHAR(10) */
                                   2,       /* tm TIME(2) */
                                   0,       /* ts TIMESTAMP(0) */
                                   2,   1}; /* bt BIT(10): 2 bits + 1 byte */
    u8(sizeof(meta));
    bytes(meta, sizeof(meta));
    le(0x0200, 2); /* nullable: n */
    tlv(1, f_signed);
    tlv(2, f_charset);
    if (with_names)
        tlv(4, f_names);
    tlv(5, f_set);
    tlv(6, f_enum);
    tlv(8, f_pk);
}

/* DATETIME2 / TIME2 packing as the server does it. */
static void datetime2(unsigned y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned s,
                      unsigned ms)
{
    uint64_t ymd = ((uint64_t)(y * 13 + mo) << 5) | d, hms = (h << 12) | (mi << 6) | s;
    be(((ymd << 17) | hms) + 0x8000000000ull, 5);
    be(ms * 10, 2); /* fsp 3: stored in hundreds of microseconds */
}

static void row_values(int n_null, int id, const char *v)
{
    le(n_null ? 0x0200 : 0, 2); /* null bitmap over the 14 present columns */
    le((uint32_t)id, 4);
    u8(200);
    u8((uint8_t)strlen(v)), bytes(v, strlen(v));
    static const uint8_t dec[] = {0x7f, 0xff, 0xfb, 0x2d, 0xc7}; /* -1234.56 */
    bytes(dec, 5);
    datetime2(2024, 2, 29, 23, 59, 58, 123);
    u8(2); /* ENUM 'yy' */
    u8(5); /* SET a,c */
    le(3, 2), u8(0), u8(1), u8(2);
    u8(4), bytes("caf\xe9", 4);
    if (!n_null)
        le(77, 4);
    /* TIME(2) -01:02:03.45: intpart floor(-hms - 0.45) and an unsigned fraction byte */
    int64_t hms = (1 << 12) | (2 << 6) | 3;
    be((uint64_t)(0x800000 - hms - 1), 3);
    u8((uint8_t)(256 - 45));
    be(1700000000, 4);
    be(0x2aa, 2);
    u8(124);
}

static char *json_of(const struct sl_buf *b)
{
    struct sl_buf j;
    sl_buf_init(&j, 0);
    size_t used;
    if (sl_mp_to_json(b->data, b->len, &used, &j, 64, NULL) != 0 || used != b->len) {
        sl_buf_release(&j);
        return strdup("(invalid)");
    }
    sl_buf_putc(&j, 0);
    return (char *)j.data;
}

static const char *g_after = "{\"id\":-5,\"u\":200,\"v\":\"h\xc3\xa9llo\",\"d\":\"-1234.56\","
                             "\"dt\":\"2024-02-29T23:59:58.123Z\",\"e\":\"yy\",\"s\":\"a,c\","
                             "\"b\":\"AAEC\",\"l\":\"caf\xc3\xa9\",\"n\":null,"
                             "\"tm\":\"-01:02:03.45\",\"ts\":\"2023-11-14T22:13:20Z\","
                             "\"bt\":682,\"y\":2024}";

/* An UPDATE_ROWS v1 body: v "a" -> "b", n NULL -> 77. */
static void update_event(void)
{
    sl_buf_reset(&M);
    le(42, 6), le(1, 2), u8(NCOLS), le(0x3fff, 2), le(0x3fff, 2);
    row_values(1, 1, "a");
    row_values(0, 1, "b");
}

static void test_rows(void)
{
    struct sl_my_table t;
    const char *why;
    table_map(1);
    T_EQ_INT(sl_my_table_parse(M.data, M.len, &t, &why), 0, "a table map with FULL metadata");
    T_CHECK(t.id == 42 && t.ncols == NCOLS && t.have_names && t.db.len == 3 &&
                !memcmp(t.db.s, "app", 3) && t.cols[0].key && !t.cols[1].key,
            "table id, db, columns, names and primary key");
    T_CHECK(t.cols[1].is_unsigned && !t.cols[0].is_unsigned && t.cols[7].charset == 63 &&
                t.cols[8].charset == 8 && t.cols[2].charset == 45 && t.cols[9].nullable,
            "signedness, charsets (default and per column) and nullability");

    /* WRITE_ROWS v2 */
    sl_buf_reset(&M);
    le(42, 6), le(1, 2), le(2, 2), u8(NCOLS), le(0x3fff, 2);
    row_values(1, -5, "h\xc3\xa9llo");
    struct sl_my_rows r;
    T_EQ_INT(sl_my_rows_begin(SL_MY_WRITE_ROWS, M.data, M.len, &r, &why), 0, "WRITE_ROWS v2");
    struct sl_buf before, after;
    sl_buf_init(&before, 0);
    sl_buf_init(&after, 0);
    T_EQ_INT(sl_my_row_next(&r, &t, &before, &after, &why), 1, "one row");
    char *j = json_of(&after);
    T_EQ_STR(j, g_after, "every type decoded, named and typed");
    free(j);
    T_EQ_INT(before.len, 0, "an insert has no before image");
    T_EQ_INT(sl_my_row_next(&r, &t, &before, &after, &why), 0, "then the end");

    /* UPDATE_ROWS v1: before and after images, the after image with n set */
    update_event();
    sl_buf_reset(&before);
    sl_buf_reset(&after);
    T_EQ_INT(sl_my_rows_begin(SL_MY_UPDATE_ROWS_V1, M.data, M.len, &r, &why), 0, "UPDATE v1");
    T_EQ_INT(sl_my_row_next(&r, &t, &before, &after, &why), 1, "an update row");
    char *jb = json_of(&before), *ja = json_of(&after);
    T_CHECK(strstr(jb, "\"v\":\"a\"") && strstr(jb, "\"n\":null") && strstr(ja, "\"v\":\"b\"") &&
                strstr(ja, "\"n\":77") && r.op == 'u',
            "update: before and after images (%s)", ja);
    free(jb);
    free(ja);

    /* every truncation of the update is refused, never read past */
    size_t full = M.len;
    int refused = 1;
    for (size_t cut = 0; cut < full; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, M.data, cut);
        sl_buf_reset(&before);
        sl_buf_reset(&after);
        int rc = sl_my_rows_begin(SL_MY_UPDATE_ROWS_V1, copy, cut, &r, &why);
        if (rc == 0)
            rc = sl_my_row_next(&r, &t, &before, &after, &why);
        if (rc == 1 || (rc == 0 && cut > 18))
            refused = 0;
        free(copy);
    }
    T_CHECK(refused, "a truncated rows event is refused at every length");

    /* DELETE with a column count that does not match the table map */
    sl_buf_reset(&M);
    le(42, 6), le(1, 2), u8(3), u8(7), u8(0), u8(1), u8(2), u8(3);
    T_EQ_INT(sl_my_rows_begin(SL_MY_DELETE_ROWS_V1, M.data, M.len, &r, &why), 0, "DELETE v1");
    T_EQ_INT(sl_my_row_next(&r, &t, &before, &after, &why), -1,
             "a rows event of another shape than its table map is refused");

    /* the envelope and its resume key */
    sl_buf_reset(&after);
    sl_buf_reset(&M);
    le(42, 6), le(1, 2), le(2, 2), u8(NCOLS), le(0x3fff, 2);
    row_values(1, -5, "x");
    sl_my_rows_begin(SL_MY_WRITE_ROWS, M.data, M.len, &r, &why);
    sl_my_row_next(&r, &t, &before, &after, &why);
    struct sl_my_source src = {.db = t.db,
                               .table = t.table,
                               .file = "binlog.000007",
                               .pos = 1234,
                               .row = 5,
                               .server_id = 1,
                               .gtid = "0-1-9",
                               .ts_ms = 1000};
    struct sl_buf env;
    sl_buf_init(&env, 0);
    T_EQ_INT(sl_my_envelope_mp(&env, 'c', NULL, &after, &src, 99), 0, "an envelope");
    char file[64];
    uint64_t pos;
    uint32_t row;
    int snap;
    T_CHECK(sl_my_envelope_position(env.data, env.len, file, sizeof(file), &pos, &row, &snap) ==
                    0 &&
                !strcmp(file, "binlog.000007") && pos == 1234 && row == 5 && !snap,
            "its resume key reads back (file, pos, row, snapshot)");
    j = json_of(&env);
    T_CHECK(strstr(j, "\"op\":\"c\",\"before\":null,\"after\":{\"id\":-5") &&
                strstr(j, "\"source\":{\"connector\":\"sluice\",\"db\":\"app\",\"table\":\"t\","
                          "\"server_id\":1,\"gtid\":\"0-1-9\",\"file\":\"binlog.000007\","
                          "\"pos\":1234,\"row\":5,\"ts_ms\":1000,\"snapshot\":false"),
            "the envelope: op, before, after, source (%s)", j);
    free(j);
    /* the row path (straight into the group's buffer) writes the very same bytes, for an insert
     * and an update, behind what the buffer held */
    struct sl_my_srcenc se;
    sl_buf_init(&se.b, 0);
    sl_my_source_encode(&se, &src);
    struct sl_buf direct;
    sl_buf_init(&direct, 0);
    sl_buf_append(&direct, "xyz", 3);
    sl_my_rows_begin(SL_MY_WRITE_ROWS, M.data, M.len, &r, &why);
    T_EQ_INT(sl_my_change_next(&direct, &r, &t, &se, 5, 99, &why), 1, "the row path: one change");
    T_CHECK(direct.len == env.len + 3 && !memcmp(direct.data + 3, env.data, env.len),
            "the row path writes the envelope's bytes");
    T_EQ_INT(sl_my_change_next(&direct, &r, &t, &se, 6, 99, &why), 0, "then the end");
    update_event();
    sl_buf_reset(&before);
    sl_buf_reset(&after);
    sl_buf_reset(&env);
    sl_buf_reset(&direct);
    sl_my_rows_begin(SL_MY_UPDATE_ROWS_V1, M.data, M.len, &r, &why);
    sl_my_row_next(&r, &t, &before, &after, &why);
    sl_my_envelope_mp(&env, 'u', &before, &after, &src, 99);
    sl_my_rows_begin(SL_MY_UPDATE_ROWS_V1, M.data, M.len, &r, &why);
    T_EQ_INT(sl_my_change_next(&direct, &r, &t, &se, 5, 99, &why), 1, "the row path: an update");
    T_CHECK(direct.len == env.len && !memcmp(direct.data, env.data, env.len),
            "the row path writes an update's envelope (before and after) byte for byte");
    sl_my_rows_begin(SL_MY_UPDATE_ROWS_V1, M.data, M.len - 3, &r, &why);
    size_t had = direct.len;
    T_EQ_INT(sl_my_change_next(&direct, &r, &t, &se, 5, 99, &why), -1, "a truncated row: refused");
    T_EQ_INT(direct.len, had, "and nothing of it is left in the buffer");
    sl_buf_release(&direct);
    sl_buf_release(&se.b);

    sl_buf_reset(&env);
    struct sl_my_str ddl = {"ALTER TABLE t ADD c INT", 23};
    T_EQ_INT(sl_my_ddl_mp(&env, &ddl, &src, 99), 0, "a schema change record");
    j = json_of(&env);
    T_CHECK(
        strstr(j, "{\"ddl\":\"ALTER TABLE t ADD c INT\",\"databaseName\":\"app\",\"source\":{") &&
            sl_my_envelope_position(env.data, env.len, file, sizeof(file), &pos, &row, &snap) ==
                0 &&
            pos == 1234 && row == 5,
        "a schema change record: ddl, databaseName, source with its resume key (%s)", j);
    free(j);
    sl_buf_release(&env);
    sl_buf_release(&before);
    sl_buf_release(&after);
    sl_my_table_release(&t);

    /* without binlog_row_metadata = FULL: no names */
    table_map(0);
    T_EQ_INT(sl_my_table_parse(M.data, M.len, &t, &why), 0, "a table map without names");
    T_CHECK(!t.have_names && !t.cols[0].name.s, "no column names known");
    sl_my_table_release(&t);
    for (size_t cut = 0; cut + 1 < M.len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, M.data, cut);
        int rc = sl_my_table_parse(copy, cut, &t, &why);
        if (rc == 0)
            sl_my_table_release(&t);
        free(copy);
    }
    T_CHECK(1, "truncated table maps decode or are refused without reading past their end");
}

static void test_events(void)
{
    const char *why;
    struct sl_my_header h;
    /* a GTID event with its CRC32 */
    sl_buf_reset(&M);
    le(1700000000, 4), u8(SL_MY_GTID), le(1, 4), le(19 + 13 + 4, 4), le(500, 4), le(8, 2);
    le(77, 8), le(3, 4), u8(1);
    uint32_t crc = (uint32_t)crc32(0L, M.data, (uInt)M.len);
    le(crc, 4);
    long n = sl_my_event(M.data, M.len, 1, &h, &why);
    T_CHECK(n == 13 && h.type == SL_MY_GTID && h.next_pos == 500 && h.server_id == 1,
            "header and checksum");
    struct sl_my_gtid g;
    T_CHECK(sl_my_gtid(M.data + 19, (size_t)n, &g, &why) == 0 && g.seq == 77 && g.domain == 3 &&
                g.flags == 1,
            "GTID: sequence, domain, standalone flag");
    M.data[20] ^= 1;
    T_CHECK(sl_my_event(M.data, M.len, 1, &h, &why) < 0 && why, "a bad checksum is refused");
    T_CHECK(sl_my_event(M.data, M.len - 1, 1, &h, &why) < 0, "a length mismatch is refused");

    /* QUERY */
    sl_buf_reset(&M);
    le(9, 4), le(0, 4), u8(3), le(0, 2), le(2, 2), u8(0xaa), u8(0xbb), bytes("app", 4);
    bytes("ALTER TABLE t ADD c INT", 23);
    struct sl_my_query q;
    T_CHECK(sl_my_query(M.data, M.len, &q, &why) == 0 && q.thread_id == 9 && q.db.len == 3 &&
                q.sql.len == 23 && !memcmp(q.sql.s, "ALTER", 5),
            "QUERY: thread, database, statement");
    T_CHECK(sl_my_query(M.data, 12, &q, &why) < 0, "a truncated QUERY is refused");

    /* ROTATE */
    sl_buf_reset(&M);
    le(4, 8), bytes("binlog.000002", 13);
    uint64_t pos;
    struct sl_my_str f;
    T_CHECK(sl_my_rotate(M.data, M.len, &pos, &f, &why) == 0 && pos == 4 && f.len == 13,
            "ROTATE: position and file");

    /* DATETIME text of the snapshot side */
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_my_datetime_text(&b, "2024-01-02 03:04:05.120", 23);
    char *j = json_of(&b);
    T_EQ_STR(j, "\"2024-01-02T03:04:05.120Z\"", "a DATETIME's text as the binlog side gives it");
    free(j);
    sl_buf_release(&b);
}

int main(void)
{
    sl_buf_init(&M, 0);
    test_rows();
    test_events();
    sl_buf_release(&M);
    return T_DONE();
}
