/* Unit tests for the file formats (src/formats/ff_*.c): type promotion, CSV quoting and files,
 * the Thrift compact writer and the RLE/bit-packing hybrid against the bytes the specifications
 * give, the string dictionary, and every whole-file compression decoded again by its library.
 *
 * Also the tool the integration tests and the benchmark use to make files (no extra build rule):
 *   test_filefmt write '<config JSON>' [strand] < records.ndjson > file
 * reads one JSON value per line (the record payloads), encodes them as one file with the options
 * of the config (as the object-storage connector would) and writes it to stdout; with
 * SLUICE_FF_TIME=1 it prints the encoding time (seconds, records, bytes) on stderr. */
#include "formats/ff_rows.h"
#include "formats/filefmt.h"
#include "formats/json_mp.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <time.h>
#include <zlib.h>
#include <zstd.h>

#include "core/crc32c.h"
#include "t.h"

/* ---- records from NDJSON ---- */

struct batch {
    struct sl_buf mp;
    struct sl_ff_record *r;
    size_t *off;
    size_t n, cap;
    uint8_t *hashes;
};

static int batch_add(struct batch *b, const char *json, size_t len)
{
    struct sl_jerr je;
    size_t start = b->mp.len;
    if (sl_json_to_mp(json, len, &b->mp, 64, &je) < 0) {
        fprintf(stderr, "line %zu: %s\n", b->n + 1, je.msg);
        return -1;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->r = realloc(b->r, b->cap * sizeof(*b->r));
        b->off = realloc(b->off, b->cap * sizeof(*b->off));
        if (!b->r || !b->off)
            abort();
    }
    b->off[b->n] = start;
    b->r[b->n].payload_len = b->mp.len - start;
    b->r[b->n].seq = b->n + 1;
    b->r[b->n].timestamp_ms = 1700000000000ull + b->n;
    b->r[b->n].hash = NULL; /* set by batch_done */
    b->n++;
    return 0;
}

/* The MessagePack buffer no longer moves: payload pointers, and a hash per record (byte k of
 * record seq is (7k + seq) mod 256: distinct, easy to recompute in a test). */
static void batch_done(struct batch *b)
{
    b->hashes = malloc(32 * (b->n ? b->n : 1));
    if (!b->hashes)
        abort();
    for (size_t i = 0; i < b->n; i++) {
        b->r[i].payload = b->mp.data + b->off[i];
        for (int k = 0; k < 32; k++)
            b->hashes[32 * i + (size_t)k] = (uint8_t)(7 * k + b->r[i].seq);
        b->r[i].hash = b->hashes + 32 * i;
    }
}

static void batch_release(struct batch *b)
{
    sl_buf_release(&b->mp);
    free(b->r);
    free(b->off);
    free(b->hashes);
}

static int encode_lines(const char *cfg_json, const char *lines, struct sl_buf *out,
                        struct sl_err *err)
{
    struct batch b = {0};
    sl_buf_init(&b.mp, 0);
    for (const char *p = lines; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len && batch_add(&b, p, len))
            abort();
        p += len + (nl ? 1 : 0);
    }
    batch_done(&b);
    json_error_t je;
    json_t *cfg = json_loads(cfg_json, 0, &je);
    struct sl_ff_opts o;
    int rc = sl_ff_opts_from_config(cfg, &o, err);
    if (rc == 0)
        rc = sl_ff_encode(&o, "orders", b.r, b.n, out, err);
    sl_ff_opts_free(&o);
    json_decref(cfg);
    batch_release(&b);
    return rc;
}

static int tool_write(const char *cfg_json, const char *strand)
{
    struct batch b = {0};
    sl_buf_init(&b.mp, 0);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, stdin)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len && batch_add(&b, line, (size_t)len))
            return 2;
    }
    free(line);
    batch_done(&b);
    json_error_t je;
    json_t *cfg = json_loads(cfg_json, 0, &je);
    if (!cfg) {
        fprintf(stderr, "config: %s\n", je.text);
        return 2;
    }
    struct sl_ff_opts o;
    struct sl_err err = {0};
    struct sl_buf out;
    sl_buf_init(&out, 0);
    struct timespec t0, t1;
    int rc = sl_ff_opts_from_config(cfg, &o, &err);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rc == 0)
        rc = sl_ff_encode(&o, strand, b.r, b.n, &out, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc) {
        fprintf(stderr, "error %d %s: %s\n", rc, err.ecode, err.msg);
        return 1;
    }
    if (getenv("SLUICE_FF_TIME"))
        fprintf(stderr, "encode_seconds %.6f records %zu bytes %zu input_bytes %zu ext %s\n",
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, b.n,
                out.len, b.mp.len, sl_ff_extension(&o));
    fwrite(out.data, 1, out.len, stdout);
    sl_ff_opts_free(&o);
    json_decref(cfg);
    sl_buf_release(&out);
    batch_release(&b);
    return 0;
}

/* ---- pure parts ---- */

static void test_promotion(void)
{
    T_EQ_INT(sl_ff_promote(SL_FT_INT, SL_FT_DOUBLE), SL_FT_DOUBLE, "Int64 + Float64 -> Float64");
    T_EQ_INT(sl_ff_promote(SL_FT_DOUBLE, SL_FT_INT), SL_FT_DOUBLE, "Float64 + Int64 -> Float64");
    T_EQ_INT(sl_ff_promote(SL_FT_INT, SL_FT_STRING), SL_FT_STRING, "Int64 + Utf8 -> Utf8");
    T_EQ_INT(sl_ff_promote(SL_FT_NULL, SL_FT_BOOL), SL_FT_BOOL, "Null + Boolean -> Boolean");
    T_EQ_INT(sl_ff_promote(SL_FT_DOUBLE, SL_FT_NULL), SL_FT_DOUBLE, "Float64 + Null -> Float64");
    T_EQ_INT(sl_ff_promote(SL_FT_BOOL, SL_FT_INT), SL_FT_STRING, "Boolean + Int64 -> Utf8");

    /* inference over a batch: types, nulls, sorted names, metadata */
    struct batch b = {0};
    sl_buf_init(&b.mp, 0);
    const char *rows[] = {"{\"b\":1,\"a\":\"x\",\"n\":null}", "{\"b\":2.5,\"c\":{\"k\":[1]}}",
                          "{\"a\":3,\"b\":7}"};
    for (int i = 0; i < 3; i++)
        batch_add(&b, rows[i], strlen(rows[i]));
    batch_done(&b);
    struct sl_ff_schema s;
    struct sl_err err = {0};
    T_EQ_INT(sl_ff_schema_infer(&s, 1, "st", b.r, b.n, &err), 0, "infer a mixed batch");
    const char *want[] = {"_record_hash", "_seq", "_strand", "_timestamp_ms", "a", "b", "c", "n"};
    int order_ok = s.ncols == 8;
    for (size_t k = 0; order_ok && k < 8; k++)
        order_ok = s.cols[k].name_len == strlen(want[k]) &&
                   memcmp(s.cols[k].name, want[k], s.cols[k].name_len) == 0;
    T_CHECK(order_ok, "columns sorted by name, metadata included (%zu columns)", s.ncols);
    if (order_ok) {
        T_EQ_INT(s.cols[4].type, SL_FT_STRING, "a: string + int -> string");
        T_EQ_INT(s.cols[4].nulls, 1, "a: missing in one row");
        T_EQ_INT(s.cols[5].type, SL_FT_DOUBLE, "b: int + double -> double");
        T_EQ_INT(s.cols[5].nulls, 0, "b: never null");
        T_CHECK(s.cols[6].type == SL_FT_STRING && s.cols[6].nested, "c: nested -> JSON string");
        T_CHECK(s.cols[7].type == SL_FT_NULL && s.cols[7].nulls == 3, "n: null in every row");
        struct sl_ff_chunk c = {0};
        T_EQ_INT(sl_ff_chunk_fill(&c, &s, b.r, b.n, 1, &err), 0, "fill converting");
        const struct sl_ff_val *v = sl_ff_at(&c, 4, 2);
        T_CHECK(v->type == SL_FT_STRING && v->len == 1 && v->v.s[0] == '3',
                "a=3 in a string column becomes \"3\"");
        v = sl_ff_at(&c, 5, 0);
        T_CHECK(v->type == SL_FT_DOUBLE && v->v.d == 1.0, "b=1 in a double column becomes 1.0");
        v = sl_ff_at(&c, 6, 1);
        T_CHECK(v->type == SL_FT_STRING && v->len == 9 && memcmp(v->v.s, "{\"k\":[1]}", 9) == 0,
                "c holds compact JSON text");
        v = sl_ff_at(&c, 1, 2);
        T_CHECK(v->type == SL_FT_INT && v->v.i == 3, "_seq of the third record is 3");
        sl_ff_chunk_release(&c);
    }
    sl_ff_schema_release(&s);
    batch_release(&b);
}

/* A batch large enough to be inferred in two halves on two threads: the merge must promote and
 * count nulls exactly as one pass would. */
static void test_split_inference(void)
{
    struct batch b = {0};
    sl_buf_init(&b.mp, 0);
    char line[128];
    for (int i = 0; i < 30000; i++) {
        int n = i < 15000 ? snprintf(line, sizeof(line), "{\"x\":%d,\"z\":%s}", i,
                                     i % 2 ? "null" : "true")
                          : snprintf(line, sizeof(line), "{\"x\":%d.5,\"y\":\"s%d\"}", i, i);
        batch_add(&b, line, (size_t)n);
    }
    batch_done(&b);
    struct sl_ff_schema s;
    struct sl_err err = {0};
    T_EQ_INT(sl_ff_schema_infer(&s, 0, "st", b.r, b.n, &err), 0, "infer 30000 records");
    T_EQ_INT(s.ncols, 3, "x, y, z");
    if (s.ncols == 3) {
        T_CHECK(s.cols[0].type == SL_FT_DOUBLE && s.cols[0].nulls == 0,
                "x: int in one half, double in the other -> double, never null");
        T_CHECK(s.cols[1].type == SL_FT_STRING && s.cols[1].nulls == 15000,
                "y: only in the second half -> 15000 nulls");
        T_CHECK(s.cols[2].type == SL_FT_BOOL && s.cols[2].nulls == 22500,
                "z: only in the first half, every other null -> 22500 nulls (%llu)",
                (unsigned long long)s.cols[2].nulls);
    }
    sl_ff_schema_release(&s);
    batch_release(&b);
}

static void csv_field(const char *in, int always, const char *want)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_ff_csv_field(&b, in, strlen(in), ',', '"', always);
    sl_buf_putc(&b, 0);
    T_EQ_STR((const char *)b.data, want, "CSV field");
    sl_buf_release(&b);
}

static void csv_file(const char *cfg, const char *lines, const char *want)
{
    struct sl_buf out;
    struct sl_err err = {0};
    sl_buf_init(&out, 0);
    int rc = encode_lines(cfg, lines, &out, &err);
    sl_buf_putc(&out, 0);
    T_CHECK(rc == 0 && strcmp((const char *)out.data, want) == 0, "CSV %s: got [%s] (%s)", cfg,
            rc == 0 ? (const char *)out.data : "", err.msg);
    sl_buf_release(&out);
}

static void test_csv(void)
{
    csv_field("plain", 0, "plain");
    csv_field("a,b", 0, "\"a,b\"");
    csv_field("say \"hi\"", 0, "\"say \"\"hi\"\"\"");
    csv_field("two\nlines", 0, "\"two\nlines\"");
    csv_field("x", 1, "\"x\"");
    csv_field("", 1, "\"\"");
    /* the seed's examples */
    csv_file("{\"format\":\"csv\",\"include_metadata\":false}",
             "{\"id\":1,\"name\":\"Alice\",\"active\":true}\n"
             "{\"id\":2,\"name\":\"Bob\",\"active\":false}\n",
             "active,id,name\ntrue,1,Alice\nfalse,2,Bob\n");
    csv_file("{\"format\":\"csv\",\"include_metadata\":false}",
             "{\"id\": 1, \"data\": {\"nested\": \"value\"}}",
             "data,id\n\"{\"\"nested\"\":\"\"value\"\"}\",1\n");
    csv_file("{\"format\":\"csv\",\"include_metadata\":false,\"csv\":{\"delimiter\":\";\","
             "\"include_header\":false,\"always_quote\":true,\"line_ending\":\"crlf\","
             "\"null_value\":\"\\\\N\",\"columns\":[\"b\",\"zz\",\"a\"]}}",
             "{\"a\":1.5,\"b\":null}\n{\"a\":\"x;y\",\"b\":[1,2]}",
             "\\N;\\N;\"1.5\"\r\n\"[1,2]\";\\N;\"x;y\"\r\n");
    csv_file("{\"format\":\"csv\",\"include_metadata\":true,\"csv\":{\"delimiter\":\"\\\\t\"}}",
             "[1]",
             "_record_hash\t_seq\t_strand\t_timestamp_ms\tvalue\n"
             "01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da\t1\torders\t"
             "1700000000000\t[1]\n");
    struct sl_buf out;
    struct sl_err err = {0};
    sl_buf_init(&out, 0);
    T_EQ_INT(encode_lines("{\"format\":\"csv\"}", "{\"a\":1}", &out, &err), 0, "a batch");
    sl_buf_release(&out);
}

static void test_thrift(void)
{
    struct sl_buf b;
    struct sl_tc t;
    sl_buf_init(&b, 0);
    sl_tc_init(&t, &b);
    sl_tc_i32(&t, 1, 1);  /* delta 1, type 5: 0x15, zigzag(1) = 2 */
    sl_tc_i64(&t, 2, -1); /* 0x16, zigzag(-1) = 1 */
    sl_tc_bin(&t, 4, "ab", 2);
    sl_tc_struct(&t, 20);  /* delta 16: long form 0x0c + zigzag varint i16 20 = 40 = 0x28 */
    sl_tc_bool(&t, 1, 1);  /* 0x11 */
    sl_tc_i64(&t, 3, 300); /* 0x26, zigzag 600 = 0xd8 0x04 */
    sl_tc_end(&t);         /* 0x00 */
    sl_tc_list(&t, 21, SL_TC_I32, 2); /* 0x19 (delta 1, list), 0x25 (2 elements of i32) */
    sl_tc_elem_i32(&t, 3);
    sl_tc_elem_i32(&t, -2);
    sl_tc_list(&t, 22, SL_TC_STRUCT, 20); /* 0x19, 0xfc, varint 20 */
    sl_tc_end(&t);
    T_EQ_STR(t_hex(b.data, b.len),
             "15021601"
             "28026162"
             "0c28"
             "11"
             "26d804"
             "00"
             "19250603"
             "19fc14"
             "00",
             "Thrift compact bytes");
    sl_buf_release(&b);
}

static void rle(const uint32_t *v, size_t n, int bw, const char *want, const char *name)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_ff_rle_hybrid(&b, v, n, bw);
    T_EQ_STR(t_hex(b.data, b.len), want, name);
    sl_buf_release(&b);
}

/* An independent decoder of the hybrid encoding, for round trips. */
static size_t rle_decode(const uint8_t *p, size_t len, int bw, uint32_t *out, size_t max)
{
    size_t i = 0, n = 0;
    while (i < len && n < max) {
        uint64_t h = 0;
        int sh = 0;
        while (i < len) {
            h |= (uint64_t)(p[i] & 0x7f) << sh;
            sh += 7;
            if (!(p[i++] & 0x80))
                break;
        }
        if (h & 1) {
            size_t count = (size_t)(h >> 1) * 8;
            for (size_t k = 0; k < count && n < max; k++) {
                uint32_t v = 0;
                for (int bit = 0; bit < bw; bit++) {
                    size_t pos = k * (size_t)bw + (size_t)bit;
                    if (i + pos / 8 < len && (p[i + pos / 8] >> (pos % 8)) & 1)
                        v |= 1u << bit;
                }
                out[n++] = v;
            }
            i += (size_t)(h >> 1) * (size_t)bw;
        } else {
            uint32_t v = 0;
            for (int k = 0; k < (bw + 7) / 8; k++)
                v |= (uint32_t)p[i++] << (8 * k);
            for (size_t k = 0; k < (h >> 1) && n < max; k++)
                out[n++] = v;
        }
    }
    return n;
}

static void test_rle(void)
{
    uint32_t seq[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    /* the example of the Parquet encodings document: 0..7 bit-packed in 3 bits */
    rle(seq, 8, 3, "0388c6fa", "bit-packed 0..7, width 3");
    uint32_t ones[100];
    for (int i = 0; i < 100; i++)
        ones[i] = 1;
    rle(ones, 100, 1, "c80101", "RLE run of 100 ones, width 1");
    uint32_t v[5000], back[5000];
    uint32_t x = 12345;
    for (int i = 0; i < 5000; i++) {
        x = x * 1103515245u + 12345u;
        v[i] = (i / 300) % 2 ? (x >> 16) % 1000 : 7; /* runs and noise */
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_ff_rle_hybrid(&b, v, 5000, 10);
    size_t n = rle_decode(b.data, b.len, 10, back, 5000);
    T_CHECK(n == 5000 && memcmp(v, back, sizeof(v)) == 0, "hybrid round trip of 5000 values");
    T_CHECK(b.len < 5000 * 10 / 8, "runs shrink the encoding (%zu bytes)", b.len);
    sl_buf_release(&b);
}

static void test_dict(void)
{
    struct sl_ff_dict d = {0};
    char names[3000][16];
    int ok = 1;
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 3000; i++) {
            snprintf(names[i], sizeof(names[i]), "k%d", i);
            ok &= sl_ff_dict_add(&d, names[i], (uint32_t)strlen(names[i])) == i;
        }
    T_CHECK(ok && d.n == 3000, "3000 distinct strings, added twice, keep their first index");
    size_t bytes = 0;
    for (int i = 0; i < 3000; i++)
        bytes += 4 + strlen(names[i]);
    T_EQ_INT(d.bytes, bytes, "dictionary PLAIN size");
    T_EQ_INT(sl_ff_dict_add(&d, "", 0), 3000, "the empty string is an entry");
    sl_ff_dict_reset(&d);
    T_EQ_INT(sl_ff_dict_add(&d, "k5", 2), 0, "reset starts again at 0");
    sl_ff_dict_release(&d);
}

/* JSONL + zstd is made on two threads: a bad record in a slice of either thread fails the file
 * with the record's error, and nothing hangs or leaks. */
static void test_jsonl_zstd_errors(void)
{
    struct batch b = {0};
    sl_buf_init(&b.mp, 0);
    for (int i = 0; i < 9000; i++)
        batch_add(&b, "{\"a\":1}", 7);
    batch_done(&b);
    static const uint8_t bad = 0xc1; /* never used in MessagePack */
    json_error_t je;
    json_t *cfg = json_loads("{\"format\":\"jsonl\",\"compression\":\"zstd\"}", 0, &je);
    struct sl_ff_opts o;
    struct sl_err err = {0};
    sl_ff_opts_from_config(cfg, &o, &err);
    size_t at[3] = {100, 3000, 8999}; /* main thread's slice, helper's slice, the last one */
    for (int k = 0; k < 3; k++) {
        const uint8_t *keep = b.r[at[k]].payload;
        b.r[at[k]].payload = &bad;
        b.r[at[k]].payload_len = 1;
        struct sl_buf out;
        sl_buf_init(&out, 0);
        memset(&err, 0, sizeof(err));
        int rc = sl_ff_encode(&o, "s", b.r, b.n, &out, &err);
        char want[32];
        snprintf(want, sizeof(want), "record %zu", at[k] + 1);
        T_CHECK(rc == SL_E_CORRUPT && strstr(err.msg, want), "jsonl+zstd fails on %s (%s)", want,
                err.msg);
        b.r[at[k]].payload = keep;
        b.r[at[k]].payload_len = 7;
        sl_buf_release(&out);
    }
    struct sl_buf out;
    sl_buf_init(&out, 0);
    T_EQ_INT(sl_ff_encode(&o, "s", b.r, b.n, &out, &err), 0, "jsonl+zstd of 9000 records");
    struct sl_ff_opts plain = o;
    plain.compression = SL_FF_NONE;
    struct sl_buf text;
    sl_buf_init(&text, 0);
    sl_ff_encode(&plain, "s", b.r, b.n, &text, &err);
    unsigned long long size = ZSTD_getFrameContentSize(out.data, out.len);
    uint8_t *back = malloc(text.len + 1);
    size_t got = back ? ZSTD_decompress(back, text.len + 1, out.data, out.len) : 0;
    T_CHECK(size == text.len && got == text.len && memcmp(back, text.data, text.len) == 0,
            "the streamed frame states its content size and holds the JSONL text (%llu)", size);
    free(back);
    sl_buf_release(&text);
    sl_buf_release(&out);
    sl_ff_opts_free(&o);
    json_decref(cfg);
    batch_release(&b);
}

static void test_compress(void)
{
    size_t len = 300000;
    uint8_t *in = malloc(len);
    for (size_t i = 0; i < len; i++)
        in[i] = (uint8_t)("{\"id\":123,\"name\":\"x\"}\n"[i % 22] + (i % 1000 == 0));
    struct sl_buf out;
    struct sl_err err = {0};
    uint8_t *back = malloc(len + 16);

    sl_buf_init(&out, 0);
    T_EQ_INT(sl_ff_compress(SL_FF_GZIP, in, len, &out, &err), 0, "gzip");
    z_stream z;
    memset(&z, 0, sizeof(z));
    inflateInit2(&z, 15 + 16);
    z.next_in = out.data;
    z.avail_in = (uInt)out.len;
    z.next_out = back;
    z.avail_out = (uInt)len + 16;
    int zr = inflate(&z, Z_FINISH);
    T_CHECK(out.data[0] == 0x1f && out.data[1] == 0x8b && zr == Z_STREAM_END &&
                z.total_out == len && memcmp(in, back, len) == 0 && z.avail_in == 0,
            "gzip member inflates to the input");
    inflateEnd(&z);

    sl_buf_reset(&out);
    T_EQ_INT(sl_ff_compress(SL_FF_ZSTD, in, len, &out, &err), 0, "zstd");
    T_CHECK(ZSTD_getFrameContentSize(out.data, out.len) == len, "zstd frame has the content size");
    T_CHECK(ZSTD_decompress(back, len + 16, out.data, out.len) == len && memcmp(in, back, len) == 0,
            "zstd frame decompresses to the input");

    sl_buf_reset(&out);
    T_EQ_INT(sl_ff_compress(SL_FF_LZ4, in, len, &out, &err), 0, "lz4");
    LZ4F_dctx *dx;
    LZ4F_createDecompressionContext(&dx, LZ4F_VERSION);
    size_t dst = len + 16, srcn = out.len;
    size_t lr = LZ4F_decompress(dx, back, &dst, out.data, &srcn, NULL);
    T_CHECK(lr == 0 && dst == len && srcn == out.len && memcmp(in, back, len) == 0,
            "lz4 frame decompresses to the input");
    LZ4F_freeDecompressionContext(dx);

    sl_buf_reset(&out);
    T_EQ_INT(sl_ff_compress(SL_FF_SNAPPY, in, len, &out, &err), 0, "snappy framed");
    int ok = out.len > 10 && memcmp(out.data, "\xff\x06\x00\x00sNaPpY", 10) == 0;
    size_t pos = 10, got = 0, chunks = 0;
    while (ok && pos + 8 <= out.len) {
        size_t clen = out.data[pos + 1] | out.data[pos + 2] << 8 | (size_t)out.data[pos + 3] << 16;
        uint32_t masked = (uint32_t)out.data[pos + 4] | (uint32_t)out.data[pos + 5] << 8 |
                          (uint32_t)out.data[pos + 6] << 16 | (uint32_t)out.data[pos + 7] << 24;
        size_t ulen = len + 16 - got;
        const char *data = (const char *)out.data + pos + 8;
        if (out.data[pos] == 0)
            ok = snappy_uncompress(data, clen - 4, (char *)back + got, &ulen) == SNAPPY_OK;
        else
            memcpy(back + got, data, ulen = clen - 4);
        uint32_t crc = sl_crc32c(0, back + got, ulen);
        ok = ok && ulen <= 65536 && masked == ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
        got += ulen;
        pos += 4 + clen;
        chunks++;
    }
    T_CHECK(ok && pos == out.len && got == len && memcmp(in, back, len) == 0 && chunks == 5,
            "snappy framing: identifier, 5 chunks with valid masked CRC-32C, the input back");

    sl_buf_reset(&out);
    T_EQ_INT(sl_ff_compress(SL_FF_SNAPPY, in, 0, &out, &err), 0, "snappy of nothing");
    T_EQ_INT(out.len, 10, "an empty snappy stream is the identifier");
    sl_buf_release(&out);

    sl_buf_init(&out, 1000);
    T_EQ_INT(sl_ff_compress(SL_FF_ZSTD, in, len, &out, &err), SL_E_TOOBIG, "the cap holds");
    sl_buf_release(&out);
    free(in);
    free(back);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "write") == 0)
        return tool_write(argv[2], argc >= 4 ? argv[3] : "events");
    test_promotion();
    test_split_inference();
    test_csv();
    test_thrift();
    test_rle();
    test_dict();
    test_compress();
    test_jsonl_zstd_errors();
    return T_DONE();
}
