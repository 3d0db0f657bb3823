/* Rows and columns for the typed file formats (CSV, Avro, Parquet): private to src/formats.
 *
 * Two passes over the batch's MessagePack payloads, no JSON library and no allocation per value:
 *
 *   1. sl_ff_schema_infer walks every record once and builds the file's columns: one per map key
 *      (a non-map payload is the column "value"), plus the metadata columns when include_metadata,
 *      each with a type promoted across the batch (sl_ff_promote) and a count of rows where it is
 *      null or missing. Columns are sorted by name (bytewise).
 *   2. sl_ff_chunk_fill decodes a slice of the records into a column-major array of 16-byte
 *      values (vals[col * cap + row]). Strings point into the payloads (borrowed: they must stay
 *      alive while the chunk is used) or into the chunk's text arena (nested maps/arrays as compact
 *      JSON, the metadata's hex hash, numbers promoted to strings).
 *
 * Parquet instead makes one pass (sl_ff_chunk_fill_local): each chunk is decoded with the columns
 * of its own rows, and the batch's schema is merged from the chunks' afterwards.
 *
 * Memory: the schema (one entry per column), plus per chunk 16 bytes x rows x columns and the text
 * arena; the encoders fill one chunk at a time (a Parquet row group, 4096 rows for CSV/Avro). */
#ifndef SL_FORMATS_FF_ROWS_H
#define SL_FORMATS_FF_ROWS_H

#include "formats/filefmt.h"

#include <stddef.h>
#include <stdint.h>

/* Column types, ordered so that promotion can stay simple (sl_ff_promote). */
enum sl_ff_type { SL_FT_NULL = 0, SL_FT_BOOL, SL_FT_INT, SL_FT_DOUBLE, SL_FT_STRING };

/* The type of a column that has held values of types a and b: equal types stay, NULL takes the
 * other, INT+DOUBLE -> DOUBLE, any other mix -> STRING (values shown as their JSON text). */
enum sl_ff_type sl_ff_promote(enum sl_ff_type a, enum sl_ff_type b);

struct sl_ff_val {
    uint8_t type;   /* enum sl_ff_type; SL_FT_NULL for null or missing */
    uint8_t nested; /* a map or array, as JSON text */
    uint8_t arena;  /* during fill: v.off is an offset in the text arena */
    uint32_t len;   /* string length */
    union {
        int64_t i;
        double d;
        const char *s;
        size_t off;
    } v;
};

struct sl_ff_col {
    const char *name; /* borrowed from a payload (or static, metadata) */
    uint32_t name_len;
    uint8_t type;   /* enum sl_ff_type, promoted across the batch */
    uint8_t nested; /* some value was a map or array */
    uint8_t meta;   /* a metadata column */
    uint64_t nulls; /* rows where the column is null or missing */
    /* inference bookkeeping */
    uint64_t last_row, present;
    uint8_t last_null;
    uint8_t tmask; /* local fill: bit 1 << type for each type of value seen */
    uint8_t arena; /* local fill: some value is in the text arena */
    int32_t next;  /* hash chain */
    uint32_t hash;
};

struct sl_ff_schema {
    struct sl_ff_col *cols;
    size_t ncols, cap;
    int32_t *heads; /* hash buckets -> column index */
    size_t nheads;
    size_t nrows;
    int meta;
    const char *strand;
    uint32_t hint[32]; /* column of the j-th key of the previous record (inference) */
};

struct sl_ff_chunk {
    struct sl_ff_val *vals; /* [col * cap + row] */
    size_t rows, cap, ncols;
    size_t colcap; /* columns allocated (sl_ff_chunk_fill_local) */
    struct sl_buf text;
    uint32_t hint[32]; /* as in the schema: chunks of one schema can be filled on threads */
};

int sl_ff_schema_infer(struct sl_ff_schema *s, int include_metadata, const char *strand,
                       const struct sl_ff_record *r, size_t n, struct sl_err *err);
void sl_ff_schema_release(struct sl_ff_schema *s);
/* Column index of name, or -1. */
long sl_ff_schema_find(const struct sl_ff_schema *s, const char *name, size_t len);

/* Decodes records r[0..n) (n <= cap) into c. convert: turn each value into its column's type
 * (INT -> DOUBLE, scalars -> STRING text); otherwise values keep their own types. The schema is
 * only read: several chunks of one schema may be filled at once on different threads. */
int sl_ff_chunk_fill(struct sl_ff_chunk *c, const struct sl_ff_schema *s,
                     const struct sl_ff_record *r, size_t n, int convert, struct sl_err *err);
void sl_ff_chunk_release(struct sl_ff_chunk *c);

/* One pass instead of infer + fill, for writers that can redo a part when the batch's schema turns
 * out different (Parquet): decodes r[0..n) into c with the columns of s, a schema private to the
 * caller that grows as keys appear and is kept from one call to the next (start it zeroed; the
 * metadata columns are added on first use when include_metadata). On return s->cols[k] describe
 * these n rows: type promoted over them, nulls (null or missing) among them, nested; values are
 * converted to that type. Columns stay in the order they appeared (not sorted); c->ncols ==
 * s->ncols. */
int sl_ff_chunk_fill_local(struct sl_ff_chunk *c, struct sl_ff_schema *s, int include_metadata,
                           const char *strand, const struct sl_ff_record *r, size_t n,
                           struct sl_err *err);

/* Building a batch's schema from the parts sl_ff_chunk_fill_local described: start zeroes s, add
 * merges the columns of one part of rows rows (in row order), finish adds the metadata columns
 * when include_metadata and sorts the columns by name. */
int sl_ff_schema_start(struct sl_ff_schema *s);
int sl_ff_schema_add(struct sl_ff_schema *s, const struct sl_ff_col *cols, size_t ncols,
                     size_t rows);
int sl_ff_schema_finish(struct sl_ff_schema *s, int include_metadata, const char *strand);

static inline struct sl_ff_val *sl_ff_at(const struct sl_ff_chunk *c, size_t col, size_t row)
{
    return &c->vals[col * c->cap + row];
}

/* Appends the JSON text of a double (as the JSON writer prints it; NaN/Infinity spelled so). */
void sl_ff_put_double(struct sl_buf *b, double d);
/* Appends an integer in decimal (no printf: it is on the hot path of the text formats). */
void sl_ff_put_i64(struct sl_buf *b, int64_t v);
/* Appends the text of a scalar value: integer, double as above, true/false, string bytes. */
void sl_ff_put_text(struct sl_buf *b, const struct sl_ff_val *v);

/* One compressed block as Parquet pages hold them: snappy and lz4 raw (LZ4_RAW), gzip a member,
 * zstd a frame, brotli a stream. */
int sl_ff_compress_block(enum sl_ff_codec codec, const uint8_t *in, size_t len, struct sl_buf *out,
                         struct sl_err *err);

/* JSONL compressed with zstd, streamed (sl_ff_encode uses it for format jsonl + zstd): the same
 * bytes a reader gets from sl_ff_encode_json + sl_ff_compress, without holding the whole text. */
int sl_ff_encode_jsonl_zstd(const struct sl_ff_opts *o, const char *strand,
                            const struct sl_ff_record *r, size_t n, struct sl_buf *out,
                            struct sl_err *err);

/* ---- pieces of the Parquet writer, exposed for the unit tests ---- */

/* Thrift compact protocol writer (only what the Parquet footer and page headers use). */
enum {
    SL_TC_TRUE = 1,
    SL_TC_FALSE = 2,
    SL_TC_I16 = 4,
    SL_TC_I32 = 5,
    SL_TC_I64 = 6,
    SL_TC_BINARY = 8,
    SL_TC_LIST = 9,
    SL_TC_STRUCT = 12,
};
struct sl_tc {
    struct sl_buf *b;
    int depth;
    int16_t last[16]; /* last field id per open struct */
};
void sl_tc_init(struct sl_tc *t, struct sl_buf *b);
void sl_tc_i16(struct sl_tc *t, int16_t id, int16_t v);
void sl_tc_i32(struct sl_tc *t, int16_t id, int32_t v);
void sl_tc_i64(struct sl_tc *t, int16_t id, int64_t v);
void sl_tc_bool(struct sl_tc *t, int16_t id, int v);
void sl_tc_bin(struct sl_tc *t, int16_t id, const void *p, size_t n);
void sl_tc_struct(struct sl_tc *t, int16_t id); /* a struct field; id 0: a list element */
void sl_tc_end(struct sl_tc *t);                /* closes the innermost struct (stop byte) */
void sl_tc_list(struct sl_tc *t, int16_t id, uint8_t elem_type, uint32_t n);
void sl_tc_varint(struct sl_buf *b, uint64_t v);
void sl_tc_elem_i32(struct sl_tc *t, int32_t v);
void sl_tc_elem_bin(struct sl_tc *t, const void *p, size_t n);

/* RLE / bit-packing hybrid of n values of bit_width bits (no length prefix). */
void sl_ff_rle_hybrid(struct sl_buf *b, const uint32_t *v, size_t n, int bit_width);

/* String dictionary: distinct (pointer, length) pairs -> dense indices, no copies. */
struct sl_ff_dict {
    const char **s;
    uint32_t *len;
    size_t n, cap, bytes; /* entries, allocated, PLAIN-encoded size of the entries */
    uint32_t *slots;      /* open addressing: index + 1, 0 = empty */
    uint32_t *hashes;
    size_t nslots;
};
void sl_ff_dict_reset(struct sl_ff_dict *d);
/* Index of s (added if new), or -1 when out of memory. */
long sl_ff_dict_add(struct sl_ff_dict *d, const char *s, uint32_t len);
void sl_ff_dict_release(struct sl_ff_dict *d);

/* CSV field, quoted when needed (or always), the quote character doubled. */
void sl_ff_csv_field(struct sl_buf *b, const char *s, size_t n, char delim, char quote, int always);

#endif
