/* Avro object container files through avro-c: the schema (given as avro.schema, or inferred from
 * the batch), the container (header, blocks, sync markers) and the codecs (null, deflate, snappy)
 * are avro-c's; the datums are encoded here (Avro binary encoding: zigzag varints, IEEE 754 little
 * endian, length-prefixed strings, union branch indices) and handed over with
 * avro_file_writer_append_encoded, so no per-value avro_value_t is built.
 *
 * Inferred schema: record `record_name` in `namespace`, one field per column sorted by name: long,
 * double, boolean, string (nested maps/arrays as JSON text), "null" for a column null in every
 * row, and ["null", T] with default null when some row is null or lacks the key. Field names are
 * made valid Avro names ([A-Za-z_][A-Za-z0-9_]*: other bytes become '_', a leading digit gets a
 * '_' prefix); two columns that end up with the same name are an error.
 *
 * Given schema: a record whose fields are null, boolean, int, long, float, double, string, bytes,
 * or a union of null and one of those. Fields take the column of the same name (missing: null);
 * int/long take integers, float/double numbers, string any scalar (numbers as JSON text), bytes
 * strings; anything else is an error naming the record and the field.
 *
 * wire_format: true puts the Confluent framing prefix, magic byte 0x00 and the 4-byte big-endian
 * schema_id, in front of the container file (docs/formats.md explains why not per datum). */
#include "formats/ff_rows.h"

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_ROWS 4096

enum kind { K_NULL, K_BOOL, K_INT, K_LONG, K_FLOAT, K_DOUBLE, K_STRING, K_BYTES };

struct field {
    const char *name;
    long col;   /* column in the batch, -1: absent (always null) */
    int kind;   /* enum kind of the non-null branch */
    int nullbr; /* union branch index of null, -1 if not nullable */
    int valbr;  /* union branch index of the value, -1 if not a union */
};

static int prim_kind(avro_schema_t s)
{
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return K_NULL;
    case AVRO_BOOLEAN:
        return K_BOOL;
    case AVRO_INT32:
        return K_INT;
    case AVRO_INT64:
        return K_LONG;
    case AVRO_FLOAT:
        return K_FLOAT;
    case AVRO_DOUBLE:
        return K_DOUBLE;
    case AVRO_STRING:
        return K_STRING;
    case AVRO_BYTES:
        return K_BYTES;
    default:
        return -1;
    }
}

/* Fills f from the field's schema; -1 if its type is not supported. */
static int field_kind(avro_schema_t fs, struct field *f)
{
    f->nullbr = f->valbr = -1;
    if (avro_typeof(fs) != AVRO_UNION) {
        f->kind = prim_kind(fs);
        if (f->kind == K_NULL)
            f->nullbr = 0; /* nothing is written for null */
        return f->kind < 0 ? -1 : 0;
    }
    size_t nb = avro_schema_union_size(fs);
    f->kind = -1;
    for (size_t b = 0; b < nb; b++) {
        int k = prim_kind(avro_schema_union_branch(fs, (int)b));
        if (k == K_NULL && f->nullbr < 0)
            f->nullbr = (int)b;
        else if (k > K_NULL && f->valbr < 0) {
            f->valbr = (int)b;
            f->kind = k;
        } else
            return -1;
    }
    if (f->kind < 0) { /* ["null"] */
        f->kind = K_NULL;
        f->valbr = f->nullbr;
    }
    return 0;
}

static void zz(struct sl_buf *b, int64_t v)
{
    sl_tc_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static int mismatch(struct sl_err *err, const struct sl_ff_record *r, const struct field *f,
                    const char *why)
{
    return sl_err_set(err, SL_E_INVAL, "schema_mismatch", "record %llu: field %s: %s",
                      (unsigned long long)r->seq, f->name, why);
}

/* Appends the encoding of v for field f (any union branch index first); 0, or a mismatch error
 * (a full buffer shows in b->failed). */
static int put_field(struct sl_buf *b, struct sl_buf *tmp, const struct field *f,
                     const struct sl_ff_val *v, const struct sl_ff_record *r, struct sl_err *err)
{
    if (!v || v->type == SL_FT_NULL) {
        if (f->nullbr < 0)
            return mismatch(err, r, f, "null (or missing) but the schema does not allow null");
        if (f->valbr >= 0 || f->kind != K_NULL)
            zz(b, f->nullbr);
        return 0;
    }
    if (f->kind == K_NULL)
        return mismatch(err, r, f, "a value where the schema says null");
    if (f->valbr >= 0)
        zz(b, f->valbr);
    switch (f->kind) {
    case K_BOOL:
        if (v->type != SL_FT_BOOL)
            return mismatch(err, r, f, "not a boolean");
        sl_buf_putc(b, (uint8_t)(v->v.i != 0));
        return 0;
    case K_INT:
        if (v->type != SL_FT_INT || v->v.i < INT32_MIN || v->v.i > INT32_MAX)
            return mismatch(err, r, f, "not an integer that fits an Avro int");
        zz(b, v->v.i);
        return 0;
    case K_LONG:
        if (v->type != SL_FT_INT)
            return mismatch(err, r, f, "not an integer");
        zz(b, v->v.i);
        return 0;
    case K_FLOAT:
    case K_DOUBLE: {
        if (v->type != SL_FT_INT && v->type != SL_FT_DOUBLE)
            return mismatch(err, r, f, "not a number");
        double d = v->type == SL_FT_INT ? (double)v->v.i : v->v.d;
        if (f->kind == K_FLOAT) {
            float x = (float)d;
            sl_buf_append(b, &x, 4); /* little-endian hosts (see ff_parquet.c) */
        } else {
            sl_buf_append(b, &d, 8);
        }
        return 0;
    }
    case K_BYTES:
        if (v->type != SL_FT_STRING)
            return mismatch(err, r, f, "not a string");
        zz(b, v->len);
        sl_buf_append(b, v->v.s, v->len);
        return 0;
    default: /* K_STRING: any scalar, as text */
        if (v->type == SL_FT_STRING) {
            zz(b, v->len);
            sl_buf_append(b, v->v.s, v->len);
            return 0;
        }
        sl_buf_reset(tmp);
        sl_ff_put_text(tmp, v);
        zz(b, (int64_t)tmp->len);
        sl_buf_append(b, tmp->data, tmp->len);
        return 0;
    }
}

static void avro_name(struct sl_buf *b, const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        sl_buf_putc(b, '_');
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        sl_buf_putc(b, ok ? (uint8_t)c : '_');
    }
}

/* The inferred schema as JSON text (into js). */
static int infer_schema(const struct sl_ff_opts *o, const struct sl_ff_schema *s, struct sl_buf *js,
                        struct sl_err *err)
{
    static const char *const names[] = {"null", "boolean", "long", "double", "string"};
    struct sl_buf nm;
    sl_buf_init(&nm, 0);
    size_t *starts = calloc(s->ncols + 1, sizeof(*starts));
    if (!starts)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    for (size_t k = 0; k < s->ncols; k++) {
        starts[k] = nm.len;
        avro_name(&nm, s->cols[k].name, s->cols[k].name_len);
        sl_buf_putc(&nm, 0);
    }
    int rc = 0;
    for (size_t k = 0; k < s->ncols && !rc; k++)
        for (size_t j = 0; j < k && !rc; j++)
            if (strcmp((char *)nm.data + starts[k], (char *)nm.data + starts[j]) == 0)
                rc = sl_err_set(err, SL_E_INVAL, "schema_conflict",
                                "columns %.*s and %.*s both become the Avro field name %s",
                                (int)s->cols[j].name_len, s->cols[j].name, (int)s->cols[k].name_len,
                                s->cols[k].name, (char *)nm.data + starts[k]);
    sl_buf_puts(js, "{\"type\":\"record\",\"name\":");
    sl_buf_json_str(js, o->avro.record_name, strlen(o->avro.record_name));
    sl_buf_puts(js, ",\"namespace\":");
    sl_buf_json_str(js, o->avro.namespace_, strlen(o->avro.namespace_));
    sl_buf_puts(js, ",\"fields\":[");
    for (size_t k = 0; k < s->ncols && !rc; k++) {
        const struct sl_ff_col *c = &s->cols[k];
        sl_buf_printf(js, "%s{\"name\":\"%s\",\"type\":", k ? "," : "",
                      (char *)nm.data + starts[k]);
        if (c->type == SL_FT_NULL || c->nulls == 0)
            sl_buf_printf(js, "\"%s\"}", names[c->type]);
        else
            sl_buf_printf(js, "[\"null\",\"%s\"],\"default\":null}", names[c->type]);
    }
    sl_buf_puts(js, "]}");
    free(starts);
    sl_buf_release(&nm);
    return rc;
}

int sl_ff_encode_avro(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                      size_t n, struct sl_buf *out, struct sl_err *err)
{
    struct sl_ff_schema s;
    struct sl_ff_chunk c;
    struct sl_buf js, data, tmp;
    avro_schema_t schema = NULL;
    avro_file_writer_t w = NULL;
    struct field *f = NULL;
    size_t *ends = NULL, nf = 0, maxd = 0;
    char *file = NULL;
    size_t file_len = 0;
    FILE *fp = NULL;
    memset(&c, 0, sizeof(c));
    sl_buf_init(&js, 0);
    sl_buf_init(&data, 0);
    sl_buf_init(&tmp, 0);
    int rc = sl_ff_schema_infer(&s, o->include_metadata, strand, r, n, err);
    if (rc)
        goto done;
    if (o->avro.wire_format && (o->avro.schema_id < 1 || o->avro.schema_id > INT32_MAX)) {
        rc = sl_err_set(err, SL_E_INVAL, "invalid_config",
                        "config.avro.schema_id: 1..2147483647 when wire_format is true");
        goto done;
    }
    if (!o->avro.schema && (rc = infer_schema(o, &s, &js, err)))
        goto done;
    const char *text = o->avro.schema ? o->avro.schema : (const char *)js.data;
    if (avro_schema_from_json_length(text, strlen(text), &schema)) {
        rc = sl_err_set(err, SL_E_INVAL, "invalid_schema", "config.avro%s: %s",
                        o->avro.schema ? ".schema" : ".namespace/record_name", avro_strerror());
        goto done;
    }
    if (avro_typeof(schema) != AVRO_RECORD) {
        rc = sl_err_set(err, SL_E_INVAL, "invalid_schema", "config.avro.schema: not a record");
        goto done;
    }
    nf = avro_schema_record_size(schema);
    f = calloc(nf + 1, sizeof(*f));
    ends = calloc(n + 1, sizeof(*ends));
    if (!f || !ends) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto done;
    }
    for (size_t k = 0; k < nf; k++) {
        f[k].name = avro_schema_record_field_name(schema, (int)k);
        /* inferred: field k is column k (names may have been changed); given: by name */
        f[k].col = o->avro.schema ? sl_ff_schema_find(&s, f[k].name, strlen(f[k].name)) : (long)k;
        if (field_kind(avro_schema_record_field_get_by_index(schema, (int)k), &f[k])) {
            rc = sl_err_set(err, SL_E_INVAL, "invalid_schema",
                            "config.avro.schema: field %s: only null, boolean, int, long, float, "
                            "double, string, bytes and unions of null with one of them",
                            f[k].name);
            goto done;
        }
    }
    for (size_t from = 0; from < n; from += CHUNK_ROWS) {
        size_t m = n - from < CHUNK_ROWS ? n - from : CHUNK_ROWS;
        if ((rc = sl_ff_chunk_fill(&c, &s, r + from, m, 0, err)))
            goto done;
        for (size_t i = 0; i < m; i++) {
            size_t start = data.len;
            for (size_t k = 0; k < nf; k++) {
                const struct sl_ff_val *v =
                    f[k].col >= 0 ? sl_ff_at(&c, (size_t)f[k].col, i) : NULL;
                if ((rc = put_field(&data, &tmp, &f[k], v, &r[from + i], err)) < 0)
                    goto done;
            }
            ends[from + i] = data.len;
            if (data.len - start > maxd)
                maxd = data.len - start;
        }
        if (data.failed) {
            rc = sl_err_set(err, SL_E_TOOBIG, "file_too_large", "file larger than the buffer cap");
            goto done;
        }
    }
    fp = open_memstream(&file, &file_len);
    const char *codec = o->avro.codec == SL_FF_DEFLATE  ? "deflate"
                        : o->avro.codec == SL_FF_SNAPPY ? "snappy"
                                                        : "null";
    /* a block must hold the largest datum: avro-c refuses a datum bigger than its block */
    size_t block = maxd + 1024 > (1u << 20) ? maxd + 1024 : (1u << 20);
    if (!fp || avro_file_writer_create_with_codec_fp(fp, "sluice", 1, schema, &w, codec, block)) {
        rc = sl_err_set(err, SL_E_IO, "avro_failed", "avro: %s", avro_strerror());
        if (fp && !w)
            fclose(fp);
        fp = NULL;
        goto done;
    }
    fp = NULL; /* the writer closes it */
    for (size_t i = 0; i < n; i++) {
        size_t start = i ? ends[i - 1] : 0;
        if (avro_file_writer_append_encoded(w, data.data + start, (int64_t)(ends[i] - start))) {
            rc = sl_err_set(err, SL_E_IO, "avro_failed", "avro: %s", avro_strerror());
            goto done;
        }
    }
    int cr = avro_file_writer_close(w);
    w = NULL;
    if (cr) {
        rc = sl_err_set(err, SL_E_IO, "avro_failed", "avro: %s", avro_strerror());
        goto done;
    }
    if (o->avro.wire_format) {
        sl_buf_putc(out, 0);
        sl_buf_put_be32(out, (uint32_t)o->avro.schema_id);
    }
    sl_buf_append(out, file, file_len);
    if (out->failed)
        rc = sl_err_set(err, SL_E_TOOBIG, "file_too_large", "file larger than the buffer cap");
done:
    if (w)
        avro_file_writer_close(w);
    if (fp)
        fclose(fp);
    free(file);
    if (schema)
        avro_schema_decref(schema);
    free(f);
    free(ends);
    sl_buf_release(&js);
    sl_buf_release(&data);
    sl_buf_release(&tmp);
    sl_ff_chunk_release(&c);
    sl_ff_schema_release(&s);
    return rc;
}
