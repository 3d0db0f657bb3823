/* Options, dispatch, extensions and the JSON / JSONL writer of the object-storage sink. */
#include "formats/filefmt.h"

#include "formats/ff_rows.h"
#include "formats/json_mp.h"

#include <stdlib.h>
#include <string.h>

static const char *const g_formats[] = {"json", "jsonl", "csv", "avro", "parquet"};
static const char *const g_codecs[] = {"none", "gzip",    "zstd",  "snappy",
                                       "lz4",  "deflate", "brotli"};

static int pick(const char *v, const char *const *names, int n)
{
    for (int i = 0; v && i < n; i++)
        if (strcmp(v, names[i]) == 0)
            return i;
    return -1;
}

static int codec(const json_t *obj, const char *key, const char *def, const char *path,
                 enum sl_ff_codec *out, struct sl_err *err)
{
    const json_t *v = json_object_get(obj, key);
    const char *s = v ? json_string_value(v) : def;
    int i = pick(s, g_codecs, (int)(sizeof(g_codecs) / sizeof(g_codecs[0])));
    if (i < 0)
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.%s: unknown codec", path);
    *out = (enum sl_ff_codec)i;
    return 0;
}

static long long num(const json_t *obj, const char *key, long long def)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : def;
}

static int flag(const json_t *obj, const char *key, int def)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static char *str(const json_t *obj, const char *key, const char *def)
{
    const json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : def;
    return s ? strdup(s) : NULL;
}

int sl_ff_opts_from_config(const json_t *cfg, struct sl_ff_opts *o, struct sl_err *err)
{
    memset(o, 0, sizeof(*o));
    const json_t *f = json_object_get(cfg, "format");
    int fi = pick(f ? json_string_value(f) : "json", g_formats, 5);
    if (fi < 0)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.format: one of json, jsonl, csv, avro, parquet");
    o->format = (enum sl_ff_format)fi;
    if (codec(cfg, "compression", "none", "compression", &o->compression, err) < 0)
        return err ? err->code : SL_E_INVAL;
    if (o->compression == SL_FF_DEFLATE)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.compression: one of none, gzip, zstd, snappy, lz4, brotli");
    o->include_metadata = flag(cfg, "include_metadata", 1);

    const json_t *p = json_object_get(cfg, "parquet");
    if (codec(p, "compression", "snappy", "parquet.compression", &o->parquet.codec, err) < 0)
        return err ? err->code : SL_E_INVAL;
    if (o->parquet.codec == SL_FF_DEFLATE)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.parquet.compression: one of none, snappy, gzip, zstd, lz4, "
                          "brotli");
    long long rg = num(p, "row_group_size", 10000);
    o->parquet.row_group_size = rg < 1 ? 1 : rg > 10000000 ? 10000000 : (uint32_t)rg;
    o->parquet.statistics = flag(p, "enable_statistics", 1);
    long long dps = num(p, "data_page_size", 1048576);
    o->parquet.data_page_size = dps < 4096 ? 4096 : dps > (1 << 30) ? (1 << 30) : (uint32_t)dps;

    const json_t *a = json_object_get(cfg, "avro");
    if (codec(a, "compression", "none", "avro.compression", &o->avro.codec, err) < 0)
        return err ? err->code : SL_E_INVAL;
    if (o->avro.codec != SL_FF_NONE && o->avro.codec != SL_FF_DEFLATE &&
        o->avro.codec != SL_FF_SNAPPY)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.avro.compression: one of none, deflate, snappy");
    o->avro.schema = str(a, "schema", NULL);
    o->avro.namespace_ = str(a, "namespace", "sluice.events");
    o->avro.record_name = str(a, "record_name", "Event");
    o->avro.wire_format = flag(a, "wire_format", 0);
    o->avro.schema_id = num(a, "schema_id", 0);

    const json_t *c = json_object_get(cfg, "csv");
    char *d = str(c, "delimiter", ",");
    char *q = str(c, "quote_char", "\"");
    char *le = str(c, "line_ending", "lf");
    o->csv.delimiter = d && strcmp(d, "\\t") == 0 ? '\t' : d && d[0] ? d[0] : ',';
    o->csv.quote = q && q[0] ? q[0] : '"';
    o->csv.crlf = le && strcmp(le, "crlf") == 0;
    free(d);
    free(q);
    free(le);
    o->csv.include_header = flag(c, "include_header", 1);
    o->csv.always_quote = flag(c, "always_quote", 0);
    o->csv.null_value = str(c, "null_value", "NULL");
    const json_t *cols = json_object_get(c, "columns");
    if (json_array_size(cols) > 0) {
        o->csv.ncolumns = json_array_size(cols);
        o->csv.columns = calloc(o->csv.ncolumns, sizeof(char *));
        if (!o->csv.columns)
            return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        for (size_t i = 0; i < o->csv.ncolumns; i++) {
            const char *name = json_string_value(json_array_get(cols, i));
            o->csv.columns[i] = strdup(name ? name : "");
        }
    }
    return 0;
}

void sl_ff_opts_free(struct sl_ff_opts *o)
{
    free(o->avro.schema);
    free(o->avro.namespace_);
    free(o->avro.record_name);
    free(o->csv.null_value);
    for (size_t i = 0; i < o->csv.ncolumns; i++)
        free(o->csv.columns[i]);
    free(o->csv.columns);
    memset(o, 0, sizeof(*o));
}

static int is_text(enum sl_ff_format f)
{
    return f == SL_FF_JSON || f == SL_FF_JSONL || f == SL_FF_CSV;
}

const char *sl_ff_extension(const struct sl_ff_opts *o)
{
    static const char *const ext[3][7] = {
        {"json", "json.gz", "json.zst", "json.snappy", "json.lz4", "json", "json.br"},
        {"jsonl", "jsonl.gz", "jsonl.zst", "jsonl.snappy", "jsonl.lz4", "jsonl", "jsonl.br"},
        {"csv", "csv.gz", "csv.zst", "csv.snappy", "csv.lz4", "csv", "csv.br"},
    };
    if (o->format == SL_FF_AVRO)
        return "avro";
    if (o->format == SL_FF_PARQUET)
        return "parquet";
    return ext[o->format][o->compression <= SL_FF_BROTLI ? o->compression : 0];
}

const char *sl_ff_content_type(const struct sl_ff_opts *o)
{
    if (is_text(o->format) && o->compression != SL_FF_NONE)
        return "application/octet-stream";
    switch (o->format) {
    case SL_FF_JSON:
        return "application/json";
    case SL_FF_JSONL:
        return "application/x-ndjson";
    case SL_FF_CSV:
        return "text/csv";
    case SL_FF_AVRO:
        return "application/avro";
    default:
        return "application/vnd.apache.parquet";
    }
}

int sl_ff_encode(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                 size_t n, struct sl_buf *out, struct sl_err *err)
{
    if (!is_text(o->format) || o->compression == SL_FF_NONE) {
        switch (o->format) {
        case SL_FF_JSON:
        case SL_FF_JSONL:
            return sl_ff_encode_json(o, strand, r, n, o->format == SL_FF_JSONL, out, err);
        case SL_FF_CSV:
            return sl_ff_encode_csv(o, strand, r, n, out, err);
        case SL_FF_AVRO:
            return sl_ff_encode_avro(o, strand, r, n, out, err);
        default:
            return sl_ff_encode_parquet(o, strand, r, n, out, err);
        }
    }
    if (o->format == SL_FF_JSONL && o->compression == SL_FF_ZSTD)
        return sl_ff_encode_jsonl_zstd(o, strand, r, n, out, err); /* streamed, see ff_compress.c */
    struct sl_ff_opts plain = *o;
    plain.compression = SL_FF_NONE;
    struct sl_buf tmp;
    sl_buf_init(&tmp, out->max);
    int rc = sl_ff_encode(&plain, strand, r, n, &tmp, err);
    if (rc == 0)
        rc = sl_ff_compress(o->compression, tmp.data, tmp.len, out, err);
    sl_buf_release(&tmp);
    return rc;
}

/* ---- JSON and JSONL: the payload's members, then the metadata members ---- */

static int meta_members(const char *strand, const struct sl_ff_record *r, int first,
                        struct sl_buf *out)
{
    sl_buf_puts(out, first ? "\"_record_hash\":\"" : ",\"_record_hash\":\"");
    sl_buf_hex(out, r->hash, 32);
    sl_buf_puts(out, "\",\"_seq\":");
    sl_ff_put_i64(out, (int64_t)r->seq);
    sl_buf_puts(out, ",\"_timestamp_ms\":");
    sl_ff_put_i64(out, (int64_t)r->timestamp_ms);
    sl_buf_puts(out, ",\"_strand\":");
    return sl_buf_json_str(out, strand, strlen(strand));
}

int sl_ff_encode_json(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                      size_t n, int lines, struct sl_buf *out, struct sl_err *err)
{
    if (!lines)
        sl_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        if (!lines && i > 0)
            sl_buf_putc(out, ',');
        size_t used, start = out->len;
        struct sl_jerr je;
        int map = sl_mp_type(r[i].payload, r[i].payload + r[i].payload_len) == SL_MP_MAP;
        if (!map)
            sl_buf_puts(out, "{\"value\":");
        if (sl_mp_to_json(r[i].payload, r[i].payload_len, &used, out, 64, &je) < 0)
            return sl_err_set(err, SL_E_CORRUPT, "bad_record", "record %llu: %s",
                              (unsigned long long)r[i].seq, je.msg);
        if (map)
            out->len--; /* reopen the object: drop its '}' */
        if (o->include_metadata)
            meta_members(strand, &r[i], out->len == start + 1, out);
        sl_buf_putc(out, '}');
        if (lines)
            sl_buf_putc(out, '\n');
    }
    if (!lines)
        sl_buf_puts(out, "]\n");
    if (out->failed)
        return sl_err_set(err, SL_E_TOOBIG, "file_too_large", "file larger than the buffer cap");
    return 0;
}
